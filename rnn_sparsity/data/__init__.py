"""Data sets shipped with the package (no download):

- iris.csv: Fisher's Iris data (150 samples, 4 features, 3 classes; public domain), in the layout of
  scikit-learn's copy: a header `150,4,<class names>`, then one row of 4 features and an integer label
  per sample.
- digits.csv.gz: scikit-learn's copy of UCI's "Optical Recognition of Handwritten Digits" test set
  (1 797 8×8 images as 64 integer pixels 0..16, 10 classes; CC BY 4.0), the same layout, gzipped.
"""

"""Data sets shipped with the package (no download): iris.csv, Fisher's Iris data (150 samples, 4 features,
3 classes; public domain), in the layout of scikit-learn's copy: a header `150,4,<class names>`, then
one row of 4 features and an integer label per sample."""

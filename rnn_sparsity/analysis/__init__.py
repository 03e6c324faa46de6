"""Analysis of trained parameters: each function takes arrays (params, outputs) and returns arrays/scalars."""

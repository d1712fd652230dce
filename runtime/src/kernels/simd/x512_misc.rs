//! x86-64 AVX-512 kernels besides the convolutions: preprocessing of raw counts and dense
//! layers.

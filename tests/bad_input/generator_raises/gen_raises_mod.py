def data(n, seed=0):
    raise ValueError(f'cannot make {n} samples')

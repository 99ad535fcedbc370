import numpy as np


def data(n, seed=0):
    return {'x': np.array([['a'] * 4] * n)}

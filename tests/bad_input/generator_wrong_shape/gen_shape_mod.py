import numpy as np


def data(n, seed=0):
    return {'x': np.zeros((n, 5), np.float32)}

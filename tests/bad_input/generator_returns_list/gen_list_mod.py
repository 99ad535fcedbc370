import numpy as np


def data(n, seed=0):
    return [np.zeros((n, 4), np.float32)]

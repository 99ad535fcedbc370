import tensorflow as tf


class NaNs(tf.Module):
    def __call__(self, x):
        return tf.math.log(-tf.abs(x) - 1.0)


def build():
    return NaNs()

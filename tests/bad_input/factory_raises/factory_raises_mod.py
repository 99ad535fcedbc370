def _load():
    raise RuntimeError('the weights file is gone')


def build():
    return _load()

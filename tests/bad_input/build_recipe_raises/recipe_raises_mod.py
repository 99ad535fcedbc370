def build(path):
    raise OSError('disk is read-only')

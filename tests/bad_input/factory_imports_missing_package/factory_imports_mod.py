import not_installed_pkg


def build():
    return not_installed_pkg.Model()

"""The hostile-input corpus: configs, data, model files and artifact trees made to exhaust
memory, hang, or write outside the artifacts folder (`cases.py`), and how each is run and
measured (`harness.py`). `python tests/hostile/measure.py` prints every case's time and peak."""

# Importing vidcore first sets TensorFlow's C++ log level and filters its
# start-up lines before any module of this package imports TensorFlow.
import vidcore  # noqa: F401

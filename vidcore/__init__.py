"""Shared building blocks of every family (see DESIGN.md).

Imported before anything of the project touches TensorFlow, so its C++
start-up lines are filtered here (vidcore.tf_logs).
"""

from vidcore import tf_logs as _tf_logs

_tf_logs.quiet_startup()

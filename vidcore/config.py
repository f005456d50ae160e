"""Helpers for the model-config dataclasses of the families."""

import dataclasses

from vidcore.errors import UserInputError


def dataclass_from_dict(cls, values):
    """Builds dataclass ``cls`` from a dict, refusing unknown keys.

    Args:
        cls: a dataclass type.
        values: mapping field name -> value (e.g. a JSON record).

    Returns:
        cls(**values).

    Raises:
        UserInputError: naming the keys that are not fields of ``cls``.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserInputError(f"unknown model settings: {unknown}")
    return cls(**values)

"""Argument checks that several public functions share."""

import keras


def model_list(teacher_or_teachers, argument: str) -> list:
    """`teacher_or_teachers` as a non-empty list of `keras.Model`s, or an error
    that names `argument` (and the index of a bad item)."""
    teachers = (
        list(teacher_or_teachers)
        if isinstance(teacher_or_teachers, (list, tuple))
        else [teacher_or_teachers]
    )
    if not teachers:
        raise ValueError(
            f"`{argument}` must be a `keras.Model` or a non-empty list of them. "
            f"Received: {argument}={teacher_or_teachers!r}."
        )
    for index, model in enumerate(teachers):
        if not isinstance(model, keras.Model):
            name = argument if len(teachers) == 1 else f"{argument}[{index}]"
            raise TypeError(
                f"`{name}` must be a `keras.Model` instance. Received: "
                f"{model!r} of type {type(model).__name__}."
            )
    return teachers

"""The evaluation math against values computed by hand."""

import numpy as np
import pytest

from keras_kd.src.report import evaluation


def test_confusion_matrix_by_hand():
    labels = [0, 1, 2, 2, 1]
    predictions = [0, 2, 2, 1, 1]
    expected = np.array([
        [1, 0, 0],
        [0, 1, 1],
        [0, 1, 1],
    ])
    np.testing.assert_array_equal(evaluation.confusion_matrix(labels, predictions), expected)
    # One-hot labels and probability rows give the same matrix.
    one_hot = np.eye(3)[labels]
    probabilities = np.eye(3)[predictions] * 0.8 + 0.2 / 3
    np.testing.assert_array_equal(evaluation.confusion_matrix(one_hot, probabilities), expected)


def test_confusion_matrix_keeps_absent_classes():
    matrix = evaluation.confusion_matrix([0, 0], [0, 1], num_classes=4)
    assert matrix.shape == (4, 4)
    assert matrix.sum() == 2 and matrix[0, 1] == 1


def test_accuracy_and_per_class_accuracy_by_hand():
    labels = [0, 1, 2, 2, 1]
    predictions = [0, 2, 2, 1, 1]
    assert evaluation.accuracy(labels, predictions) == pytest.approx(3 / 5)
    per_class = evaluation.per_class_accuracy(labels, predictions, num_classes=4)
    np.testing.assert_allclose(per_class[:3], [1.0, 0.5, 0.5])
    assert np.isnan(per_class[3])  # no example of class 3


def test_agreement_ignores_labels():
    assert evaluation.agreement([0, 1, 2, 3], [0, 1, 0, 3]) == pytest.approx(0.75)
    assert evaluation.agreement([2, 2], [1, 1]) == 0.0


def test_disagreement_matrix_counts_student_mistakes_where_teacher_is_right():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    teacher = np.array([0, 0, 1, 0, 2, 2, 1])
    student = np.array([1, 0, 2, 1, 0, 1, 2])
    # Teacher right: examples 0, 1, 2, 4, 5. Student wrong among those:
    # 0 (0 -> 1), 2 (1 -> 2), 4 (2 -> 0), 5 (2 -> 1). Example 3 and 6 are the
    # teacher's own mistakes and do not count.
    expected = np.array([
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
    ])
    np.testing.assert_array_equal(
        evaluation.disagreement_matrix(labels, teacher, student), expected
    )


def test_reliability_curve_and_ece_by_hand():
    probabilities = np.array([
        [0.95, 0.05],  # confidence 0.95, predicts 0, label 0: right
        [0.75, 0.25],  # 0.75, predicts 0, label 1: wrong
        [0.45, 0.55],  # 0.55, predicts 1, label 1: right
        [0.35, 0.65],  # 0.65, predicts 1, label 0: wrong
    ])
    labels = [0, 1, 1, 0]
    confidence, accuracy, count = evaluation.reliability_curve(probabilities, labels, num_bins=5)
    np.testing.assert_array_equal(count, [0, 0, 1, 2, 1])
    np.testing.assert_allclose(confidence[2:], [0.55, 0.70, 0.95])
    np.testing.assert_allclose(accuracy[2:], [1.0, 0.0, 1.0])
    assert np.isnan(confidence[0]) and np.isnan(accuracy[1])
    # 1/4 * |1 - 0.55| + 2/4 * |0 - 0.70| + 1/4 * |1 - 0.95|
    expected = 0.25 * 0.45 + 0.5 * 0.70 + 0.25 * 0.05
    assert evaluation.expected_calibration_error(probabilities, labels, num_bins=5) == pytest.approx(expected)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Confidence 0.75 everywhere, right on 3 of 4 examples.
    probabilities = np.tile([[0.75, 0.25]], (4, 1))
    assert evaluation.expected_calibration_error(probabilities, [0, 0, 0, 1], 10) == pytest.approx(0.0)


def test_softmax_matches_definition():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]])
    expected_first = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    result = evaluation.softmax(logits)
    np.testing.assert_allclose(result[0], expected_first)
    np.testing.assert_allclose(result[1], [0.5, 0.5, 0.0], atol=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="same length"):
        evaluation.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match=r"num_classes=0"):
        evaluation.confusion_matrix([0], [0], num_classes=0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        evaluation.confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="`labels` must hold integer class indices"):
        evaluation.accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"`predictions` must be a 1-D array.*\(2, 2, 2\)"):
        evaluation.accuracy([0, 1], np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="sum to 1"):
        evaluation.expected_calibration_error([[2.0, 1.0]], [0])
    with pytest.raises(ValueError, match=r"`probabilities` must be a 2-D array"):
        evaluation.expected_calibration_error([0.5, 0.5], [0])
    with pytest.raises(ValueError, match=r"num_bins=0"):
        evaluation.expected_calibration_error([[0.5, 0.5]], [0], num_bins=0)

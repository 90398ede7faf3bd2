"""Reference teacher and student architectures for text classification.

The teacher is a small BERT-like Transformer encoder built from Keras layers
(no pretrained weights to download); the students are the cheap models people
deploy instead: an embedding bag (mean of word vectors) and a 1-D CNN. All
take padded integer token ids (0 is padding, as `TextVectorization` makes
them) and output logits.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_kd")
class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding plus a learned position embedding.

    Propagates the padding mask (token id 0) to the layers that follow.

    Args:
        vocabulary_size: Number of token ids.
        sequence_length: Maximum sequence length.
        embedding_dim: Size of the embedding vectors.

    Example:

    >>> layer = TokenAndPositionEmbedding(100, 8, 4)
    >>> tuple(layer(keras.ops.ones((2, 8), "int32")).shape)
    (2, 8, 4)
    """

    def __init__(self, vocabulary_size: int, sequence_length: int, embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.tokens = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="tokens")
        self.positions = layers.Embedding(sequence_length, embedding_dim, name="positions")
        self.supports_masking = True

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions.build((input_shape[-1],))
        self.built = True

    def call(self, token_ids):
        length = ops.shape(token_ids)[-1]
        return self.tokens(token_ids) + self.positions(ops.arange(length))

    def compute_mask(self, token_ids, mask=None):
        return ops.not_equal(token_ids, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
        )
        return config


def transformer_teacher(
    vocabulary_size: int,
    sequence_length: int,
    num_classes: int,
    embedding_dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    feedforward_dim: int = 128,
    dropout: float = 0.1,
    name: str = "transformer_teacher",
) -> keras.Model:
    """A small Transformer encoder classifier (post-norm, as in BERT).

    Padding positions are masked in the attention and in the final mean
    pooling.

    Example:

    >>> model = transformer_teacher(1000, 16, 3)
    >>> model.output_shape
    (None, 3)
    """
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = TokenAndPositionEmbedding(vocabulary_size, sequence_length, embedding_dim, name="embedding")(token_ids)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for index in range(1, num_layers + 1):
        attention = layers.MultiHeadAttention(
            num_heads, embedding_dim // num_heads, dropout=dropout, name=f"encoder{index}_attention"
        )(x, x)
        x = layers.LayerNormalization(name=f"encoder{index}_norm1")(x + attention)
        hidden = layers.Dense(feedforward_dim, activation="gelu", name=f"encoder{index}_ffn1")(x)
        hidden = layers.Dense(embedding_dim, name=f"encoder{index}_ffn2")(hidden)
        hidden = layers.Dropout(dropout, name=f"encoder{index}_dropout")(hidden)
        x = layers.LayerNormalization(name=f"encoder{index}")(x + hidden)
    x = layers.GlobalAveragePooling1D(name="features")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(token_ids, outputs, name=name)


def embedding_bag_student(
    vocabulary_size: int,
    sequence_length: int,
    num_classes: int,
    embedding_dim: int = 16,
    name: str = "embedding_bag_student",
) -> keras.Model:
    """The mean of the words' embeddings, then a linear classifier
    (fastText-style). Padding is masked out of the mean.

    Example:

    >>> embedding_bag_student(1000, 16, 3).count_params()
    16051
    """
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="embedding")(token_ids)
    x = layers.GlobalAveragePooling1D(name="features")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(token_ids, outputs, name=name)


def cnn1d_student(
    vocabulary_size: int,
    sequence_length: int,
    num_classes: int,
    embedding_dim: int = 16,
    filters: int = 32,
    kernel_size: int = 3,
    name: str = "cnn1d_student",
) -> keras.Model:
    """A 1-D convolution over word embeddings with global max pooling.

    Example:

    >>> cnn1d_student(1000, 16, 3).output_shape
    (None, 3)
    """
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(token_ids)
    x = layers.Conv1D(filters, kernel_size, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalMaxPooling1D(name="features")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(token_ids, outputs, name=name)

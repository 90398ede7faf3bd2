"""Timing pilot for benchmarks/bert_case.py: tokens/s of MLM pretraining and
of classifier steps for a few BERT sizes (not a result; prints only).
It keeps keras-hub's default `mask_selection_length=96`, which overstates
the cost: bert_case.py predicts 8 masked positions per 32-token sequence."""

import sys
import time

import numpy as np
import keras
import keras_hub
import tensorflow as tf

from keras_kd import text_datasets as td

texts = td.load_debian_unlabelled()[:20000]
vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
    tf.data.Dataset.from_tensor_slices(texts).batch(1000), 8000, lowercase=True
)
print("vocab", len(vocab))
tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab, lowercase=True)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 48
pre = keras_hub.models.BertMaskedLMPreprocessor(tokenizer, sequence_length=L)
for layers, hidden in ((2, 128), (4, 128), (4, 192)):
    bb = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=layers, num_heads=max(2, hidden // 64),
        hidden_dim=hidden, intermediate_dim=4 * hidden, max_sequence_length=L,
    )
    mlm = keras_hub.models.BertMaskedLM(bb, preprocessor=None)
    mlm.compile(optimizer=keras.optimizers.AdamW(5e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[])
    ds = tf.data.Dataset.from_tensor_slices(texts[:128 * 12]).batch(128).map(pre).cache()
    mlm.fit(ds.take(2), verbose=0)
    t = time.time()
    mlm.fit(ds.skip(2), verbose=0)
    dt = time.time() - t
    print(f"L={L} layers={layers} hidden={hidden} params={bb.count_params():,} "
          f"{10 * 128 * L / dt:,.0f} tokens/s ({dt / 10:.3f} s/step of 128)", flush=True)

"""Test fixture: a text tagger trained on sentences: its vocabulary (word -> most frequent tag) is a
lookup table inside the SavedModel; strings in, strings out; it refuses an empty text."""
import numpy as np

WORDS = {"good": "pos", "great": "pos", "bad": "neg", "awful": "neg", "table": "neu", "river": "neu"}


def sentences(n, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(sorted(WORDS))
    return np.array([" ".join(rng.choice(words, rng.integers(2, 6))) for _ in range(n)], dtype=object)


def build(path):
    import tensorflow as tf
    from collections import Counter

    counts = Counter()
    for s in sentences(512, 1):  # "training": the tag each word gets most often
        for w in s.split():
            counts[(w, WORDS[w])] += 1
    vocab = sorted({w for w, _ in counts})
    tags = [max((c, t) for (w2, t), c in counts.items() if w2 == w)[1] for w in vocab]

    class Tagger(tf.Module):
        def __init__(self):
            self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(vocab, tags), default_value="unk")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            check = tf.debugging.assert_greater(tf.reduce_min(tf.strings.length(text)), 0, message="empty text: nothing to tag")
            with tf.control_dependencies([check]):
                text = tf.identity(text)
            first = tf.strings.split(text).to_tensor(default_value="")[:, 0]
            return {"tag": self.table.lookup(first)}

    m = Tagger()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})


def data(n=16, seed=0):
    return {"text": np.array([s.encode() for s in sentences(n, seed)], dtype=object)}


def data_with_empty(n=16, seed=0):
    """The same sentences, with sample 1 empty: the model refuses it."""
    texts = data(n, seed)["text"]
    texts[1] = b""
    return {"text": texts}

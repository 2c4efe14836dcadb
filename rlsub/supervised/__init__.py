"""Supervised image classification in a random subspace (MNIST, CIFAR-10), as in Li et al. 2018.

:mod:`rlsub.supervised.data` loads the data sets and their variants (shuffled pixels, shuffled
labels, training subsets); :mod:`rlsub.supervised.trainer` is the trainer behind ``rlsub train``.
"""

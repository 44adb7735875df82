"""Helpers of the book's pages: what a notebook calls so that its cells stay short.

* :mod:`cbp.book.parameters`: check the types of a page's Papermill parameters (the cell after them);
* :mod:`cbp.book.launch`: turn a page's parameters into a training command and run it;
* :mod:`cbp.book.run_data`: read what a run wrote (logs, metrics, predictions);
* :mod:`cbp.book.training_page`: what the training pages (chapters 5-6) share: train or reuse their
  runs, read them, the paper's numbers beside them and the conclusions they support;
* :mod:`cbp.book.figures`: the training pages' figures; :mod:`cbp.book.plotting`: the book's style
  and shared plots;
* :mod:`cbp.book.captions`: the text that labels a run (data, iterations, hardware) and the paper's
  numbers beside it;
* :mod:`cbp.book.toy` (chapters 1-2) and :mod:`cbp.book.occl_geometry` (chapter 4);
* the figures and tables of the chapters, so that their cells stay short:
  :mod:`cbp.book.toy_figures` (1-2), :mod:`cbp.book.prototype_figures` (3),
  :mod:`cbp.book.occl_figures` (4), :mod:`cbp.book.current_study` and :mod:`cbp.book.verdict_figures`
  (7), :mod:`cbp.book.analysis_tables` (8) and :mod:`cbp.book.past_studies` (the history appendix).

The book sits on top of everything: it may import the engine, the study and the method; nothing
imports it.
"""

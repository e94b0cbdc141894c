"""One-off preparation of the real benchmarks: official archives in, the prepared layout out.

:mod:`canetlib.data.prepare.pascal` builds PASCAL-5i from VOC2012 + SBD and
:mod:`canetlib.data.prepare.coco` builds COCO-20i from the COCO 2014 instance
annotations (it needs pycocotools). Both write the layout of
:mod:`canetlib.data.prepared` under ``<root>/canet``, which the runtime readers
(:mod:`canetlib.data.pascal`, :mod:`canetlib.data.coco`) read without importing
anything from here. :mod:`canetlib.data.prepare.fss1000` fetches FSS-1000 and checks
its published layout, which :mod:`canetlib.data.fss1000` reads as it lies.
``python -m canetlib prepare {pascal,coco,fss1000}`` runs them; fetching the archives
is :func:`canetlib.data.archive.ensure_dataset`'s job.
"""

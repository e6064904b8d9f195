"""The phases of a one-shot NAS run, run in order by :class:`osnas.agent.MainAgent`.

lookup table (``lookup_table.py``: components and per-layer costs) -> supernet
(``supernet.py``) -> search (``search.py``) -> final training (``final.py``) ->
test (``evaluate.py``). Each phase owns what its checkpoint holds
(``state_dict``/``load_state_dict``) and skips itself when the run directory
already has its output; supernet and final training share one epoch loop
(``epochs.py``: non-finite guard, metrics, checkpoint, progress, callback).
"""

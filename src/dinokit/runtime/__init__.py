"""Runtime plumbing below everything else, as dinov2 keeps ``dinov2/distributed`` below both
training and evaluation: :mod:`~dinokit.runtime.machine` (what the machine offers, how many
loader workers), :mod:`~dinokit.runtime.device`, :mod:`~dinokit.runtime.precision`,
:mod:`~dinokit.runtime.distributed` (process group, rank, gathering) and
:mod:`~dinokit.runtime.sync_batchnorm`."""

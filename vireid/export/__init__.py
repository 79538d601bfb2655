"""Trained models out of PyTorch: ``vireid-export`` (``export_checkpoint``) writes one graph
per modality (``visible.onnx`` and ``infrared.onnx``, or TorchScript ``.pt`` files, identical
but for the stem) and ``export.json`` saying what they take and give, after running each with
its runtime against PyTorch; ``vireid-test --model`` (``evaluate_export``) scores such a
folder as its checkpoint is scored. docs/deploy.md.

Modules: ``settings`` (the options), ``graph`` (the exported module, the two writers),
``runtime`` (running the files), ``parity`` (the check), ``sidecar`` (export.json),
``folder`` (the output folder, written whole or not at all), ``pipeline`` (the export),
``evaluate`` (``--model``). onnx and onnxruntime (the ``export`` extra) are imported only
when an ONNX file is written or run.
"""

from vireid.export.settings import ExportFormat as ExportFormat
from vireid.export.settings import ExportSettings as ExportSettings

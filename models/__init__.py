"""bytezip's shipped models as package data (this folder is installed as the package `bytezip.models`).

Each model is `<name>.safetensors` + `<name>.json`, with its priming dictionary `<name>.dict.xz`; README.md is
the model card. `bytezip.registry` finds them through `importlib.resources.files("bytezip.models")`.
"""

"""Every config dialect in one package.

- :mod:`.models`      the one table of default models, the one model-name resolver and causal-LM loading
  (the only part of this package that stage rooms import);
- :mod:`.yaml_keys`   YAML reading (duplicate keys refused), the one ``--set key.sub=value`` override syntax,
  the line of a key for error messages, the one path expander;
- :mod:`.yaml_config` reading a YAML file into a pydantic model with ``file, line N: 'key': problem`` errors;
- :mod:`.sections`    the typed sections of an experiment (data, retrieve, fuse, rerank, rewrite, generate, ...);
- :mod:`.experiment`  ``ExperimentConfig`` and ``load_config``.

Nothing here imports a stage room's code at module level, and nothing here builds a component: that is
:mod:`rankwise.build`.
"""

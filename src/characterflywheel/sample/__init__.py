"""Pre-herding sampling: rejection sampling over a model pool (paper 5.1) with guarded user-signal
re-ranking (7.4), and hard prompts by reward variance for online RL (7.3).

Modules (imported on use, so that loading the config does not pull in numpy/scipy work):

* ``sample.rejection``: ``rejection_sample(prompts, pool, judge, backend_factory, settings,
  user_signal, parent_win_rate, progress, out_dir) -> RejectionResult``
* ``sample.hard_prompts``: ``select_hard_prompts(prompts, replies_or_backend, judge, share, count,
  by, sampling, progress, out_dir) -> HardPromptSelection``
* ``sample.stage``: ``run_pre_herding_sampling(curated_prompts_path, pool, judge, user_signal,
  backend_factory, out_dir, settings, parent_win_rate, progress) -> metrics``
* ``sample.protocols``: the judge / user-signal protocols this package codes against
* ``sample.settings``: the ``[sample]`` config section
"""

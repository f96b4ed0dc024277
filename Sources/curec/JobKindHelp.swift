// Made from the job kinds' parameter declarations (`JobKindParameters` in CURecServer):
// `CUREC_UPDATE_DOCS=1 swift test --filter DocsTables` rewrites it, and that test fails
// while it differs from the declarations.

/// The parameters of every job kind, for `curec jobs submit --help`.
enum JobKindHelp {
    static let text = #"""
Parameters by kind (key=value; see docs/jobs.md):

train:
  library=<text> (required): the plugin library: a file name in the plugin directories (CURecBPR or libCURecBPR.so), never a path
  config=<text> (default empty): the plugin config text (JSON for the bundled Swift plugins)
  config_base64=<base64> (default none): the plugin config as base64 bytes (a serialized protobuf for C plugins); instead of config
  name=<name> (default from the library (CURecBPR: bpr)): the model and instance name: the result is models/<name>/vN
  serve=<true or false> (default false): then load or hot-reload the serving instance name from the new version
  isolation=<in_process or process> (default in_process): where the plugin trains and then serves: in the daemon, or in its own worker process (docs/isolation.md)
  call_time_limit_ms=<integer 1...3600000> (default 10000): isolation=process only: a call of the served instance that takes longer kills and restarts its worker
  memory_limit_mb=<integer 64...4194304> (default none): isolation=process only: the worker's address-space limit (RLIMIT_AS) in MiB
  cpu_limit_seconds=<integer 1...1000000000> (default none): isolation=process only: the worker's CPU-time limit (RLIMIT_CPU) in seconds

evaluate:
  plugin=<text> (default the default recommender (default_recommender)): the serving recommender instance to evaluate
  split=<validation or test> (default test): the leave-one-out split ranked
  cutoffs=<integers 1...1000, comma-separated, at most 16> (default 10,20): the K of Recall@K, NDCG@K and MRR@K

pretrain:
  name=<name> (default lm): the model name: the result is models/<name>/vN
  steps=<integer 1...1000000> (default 400): training steps (warm-up shortened to a tenth of them when given)
  layers=<integer 1...24> (default 4): transformer blocks
  heads=<integer 1...32> (default 4): attention heads; must divide width
  width=<integer 8...2048> (default 128): embedding width
  context=<integer 16...2048> (default 256): context length, tokens
  vocabulary=<integer 300...65536> (default 2048): BPE vocabulary size
  batch=<integer 1...256> (default 8): sequences per step
  seed=<integer >= 0> (default 1): random seed

finetune:
  dataset=<name> (required): the uploaded chat dataset, NAME (its newest version) or NAME@vN
  output=<name> (required): the model name to publish: models/<output>/vN, served as model=<output>
  method=<lora or full> (default lora): LoRA adapters (peft layout) or every weight (model.safetensors)
  rank=<integer 1...256> (default 8): LoRA rank
  alpha=<number 0.001...4096> (default 16): LoRA scale numerator (scale alpha/rank)
  dropout=<number 0...0.9> (default 0.05): LoRA input dropout
  targets=<comma-separated among q, k, v, o, gate, up, down> (default q,k,v,o): the projections that get adapters
  steps=<integer 1...1000000> (default one pass over the examples): optimizer steps
  batch=<integer 1...64> (default 4): conversations per step
  learning_rate=<number 1e-07...1> (default 0.0002 (lora), 2e-05 (full)): peak learning rate (cosine decay to a tenth)
  max_length=<integer 16...2048> (default 512): tokens per conversation; longer ones lose their oldest prompt tokens
  checkpoint_every=<integer 1...100000> (default 20): steps between resumable checkpoints
  seed=<integer >= 0> (default 0): random seed

pipeline:
  profile=<standard or quick> (default standard): the configuration: quick runs every stage in minutes
  seeds=<integers >= 0, comma-separated, at most 16> (default 42,1,2,3,4 (standard), 42 (quick)): seeds of each downstream variant
  align_steps=<integer 1...1000000> (default 30 (standard), 24 (quick)): alignment fine-tuning steps
  grpo_steps=<integer 1...100000> (default 4 (standard), 2 (quick)): GRPO steps
  candidates=<integer 1...64> (default 3 (standard), 2 (quick)): reasons sampled per subject for correction
  run=<name> (default none: the job's own workspace): a workspace <data_dir>/pipelines/<run> that outlives the job, so later jobs continue it
  stop_after=<one of align, content, reward, grpo, reasons, downstream> (default none: every stage): end after this stage (needs run)
"""#
}

"""Task components: one module per task, each a `TaskComponent` whose `build` returns a contracts.Task
(data, loss, metrics) and which declares its checks, probes, figures and summary metrics."""

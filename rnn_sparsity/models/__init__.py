"""Model components: one module per family, each a `ModelComponent` whose `build` returns a
contracts.Model (pure init/apply over a flat parameter dict): ctrnn (continuous-time RNN with a
hand-written adjoint), mlp and cnn (Flax students), lowrank_linear, flax (a researcher's Flax module)."""

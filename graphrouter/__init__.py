"""GraphRouter: embeddings, HeteroData building, the GNN, training, the scorer, baselines, metrics, loaders, CLI."""

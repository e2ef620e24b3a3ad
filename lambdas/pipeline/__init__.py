"""Runtime code shared by the ingest and consumer Lambdas (deployed as a plain asset of lambdas/)."""

"""Files in and out: crash-safe writes (:mod:`.files`), feature files (:mod:`.features`), datasets
(:mod:`.dataset`), results JSON (:mod:`.results`) and model-file integrity (:mod:`.integrity`)."""

"""Offline training for reelscore: read feedback from the database (dataset), build
features (features), fit models (train), measure them (evaluate) and write what was
learned back as rows (publish). Run through `reelscore ml weights|clusters|factors|abtest|all`."""

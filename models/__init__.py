"""The shipped, trained models: ``{name}/{version}/`` folders of the model registry (classifiers/registry.py),
installed with the package so every installation (wheel, image, editable checkout) classifies out of the box.
``make models`` regenerates them."""

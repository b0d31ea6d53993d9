"""The data layer: what a competition's files hold, read and checked, with no training code.

- tables.py: the train/test tables (ids, image paths, encoded labels, groups) and CSV checks
- layouts.py: the csv, folders and person-folders layouts, and ``read_data``
- labelers.py: registered labelers of the person-folders layout (mask-gender-age)
- images.py: finding image files and decoding them to RGB uint8
- facts.py: measured facts of the images (sizes, modes, class counts) for init and fitted settings
- image_cache.py: decoded images kept on disk per image set and size
- folds.py: the fold of each train row, made once and shared by every run

Used by train/, ensemble/, tune/ and inspect/; it imports none of them.
"""

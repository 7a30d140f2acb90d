"""The column vocabulary of label files, shared by reading (``label_read``) and writing (``label_write``).

Order is reading precedence: when a row has several columns for one field, the first listed wins.
Writing only asks whether a column holds a field, so both sides always agree on which columns those are.
"""

from __future__ import annotations

ID_COLUMNS = ("image", "image_id", "isic_id", "image_name", "id", "name", "filename", "file")
SITE_COLUMNS = ("localization", "anatom_site_1", "anatom_site_general", "anatom_site_general_challenge", "site", "location")
AGE_COLUMNS = ("age", "age_approx", "age_approximate")

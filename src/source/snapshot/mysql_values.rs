//! MySQL/MariaDB snapshot rows → the values streaming gives for the same row.

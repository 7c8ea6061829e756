"""Imports of CSV and XLSX files (DESIGN 11): read a file into text columns (``readers``),
check it as one of the nine kinds against the database (``schemas`` and ``validate``), then
write it all or nothing (``writers`` and ``portfolios.services.imports``).
"""

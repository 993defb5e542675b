"""The Textual app. Imports nothing heavy at package import time."""

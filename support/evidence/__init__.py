"""Evidence: the Allure attachments, the timeline chart, the run summary, report metadata, the progress line.

Layer 8: may import every layer below. ``support.evidence.allure`` is the one
module of ``support`` that talks to Allure.
"""

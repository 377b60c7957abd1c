"""The static run report (RUN_DIR/report.html): counts, reasons, stats, tokens, chats and graphs."""

from gem_agents.report.build import report_data, write_report

__all__ = ["report_data", "write_report"]

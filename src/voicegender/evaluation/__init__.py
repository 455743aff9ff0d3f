"""Scoring models: metrics, baselines, the robustness conditions, report files and plots."""

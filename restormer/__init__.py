"""restormer"""

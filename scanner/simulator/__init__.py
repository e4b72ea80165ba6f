"""The embedded PAI-EAS simulator. Shares only ``scanner.eas`` and ``scanner.errors`` with the rest."""

"""Loyalty points, prepaid and gift cards, vouchers and attendants in the registry (issue 15)."""

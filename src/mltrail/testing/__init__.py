"""Test suites mltrail ships for code built on it: `store_contract` for stores."""

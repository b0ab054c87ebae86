"""Recommendations: the business rules applied to candidate lists, declared in
feature_repo/recommend_rules.yaml; one function shared by the service and batch lists."""

"""What the router and the referral service both know: police forces, national mechanisms and SLA
deadlines. Pure data and functions; it imports nothing of either service."""

"""Intake: drops where sites leave submissions (local, S3, SFTP), archives, and staging."""

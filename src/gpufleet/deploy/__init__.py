"""Deploying gpufleet: the AWS CloudFormation stack (``stack``) and its Lambda trigger.

``stack`` builds the template with troposphere and is needed only by whoever writes it
(``gpufleet deploy aws``, the ``deploy`` extra); ``trigger`` is the Lambda handler that
runs inside the stack and needs nothing beyond the ``aws`` extra.
"""

"""The CloudFormation template, one module per concern; ``template.build`` assembles them.

Modules name each other's resources by logical id (``names``), never by object, so
each stays small and none imports another's resources.
"""

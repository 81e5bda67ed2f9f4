"""Ray Serve for registry models: one deployment whose replicas route, decode and run batched
forward passes, ``pomona_*`` metrics, and the control calls behind ``pomona serve``.

The pure parts (:mod:`~pomona.serving.config`, :mod:`~pomona.serving.plan`,
:mod:`~pomona.serving.oip`, :mod:`~pomona.serving.schema`) import no Ray; the rest is the only
place pomona imports Ray Serve.
"""
